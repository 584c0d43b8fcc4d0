// SMSC driven by node `smpp` 0.5.1 (smpp.createServer), for sluice's SMPP interop test.
// Usage: node smpp_server.js
// Listens on 127.0.0.1:0 and prints {"event":"listening","port":N}. For one ESME: accepts
// bind_transceiver, answers submit_sm with message_id "node-42" and then sends a delivery
// receipt deliver_sm (text + receipted_message_id/message_state TLVs), answers enquire_link
// and unbind, then exits. Prints JSON lines of everything it parsed.
'use strict';
const smpp = require('smpp');

const emit = (o) => process.stdout.write(JSON.stringify(o) + '\n');
const text = (sm) => {
  if (sm && typeof sm === 'object' && 'message' in sm) return String(sm.message);
  if (Buffer.isBuffer(sm)) return sm.toString('latin1');
  return String(sm);
};
setTimeout(() => { emit({ event: 'error', error: 'timeout' }); process.exit(1); }, 20000).unref();

const server = smpp.createServer((session) => {
  session.on('error', (e) => emit({ event: 'error', error: String(e) }));
  session.on('bind_transceiver', (pdu) => {
    emit({
      event: 'bind_transceiver',
      system_id: pdu.system_id,
      password: pdu.password,
      interface_version: pdu.interface_version,
    });
    session.send(pdu.response({ system_id: 'nodesmsc' }));
  });
  session.on('submit_sm', (pdu) => {
    emit({
      event: 'submit_sm',
      sequence: pdu.sequence_number,
      source_addr: pdu.source_addr,
      destination_addr: pdu.destination_addr,
      dest_addr_ton: pdu.dest_addr_ton,
      registered_delivery: pdu.registered_delivery,
      user_message_reference: pdu.user_message_reference,
      short_message: text(pdu.short_message),
    });
    session.send(pdu.response({ message_id: 'node-42' }));
    session.deliver_sm({
      source_addr: pdu.destination_addr,
      destination_addr: pdu.source_addr,
      esm_class: 4,
      short_message: 'id:node-42 sub:001 dlvrd:001 submit date:2511260153 done date:2511260154 stat:DELIVRD err:000 text:hello',
      receipted_message_id: 'node-42',
      message_state: 2,
    }, (r) => emit({ event: 'deliver_sm_resp', status: r.command_status, sequence: r.sequence_number }));
  });
  session.on('enquire_link', (pdu) => {
    emit({ event: 'enquire_link' });
    session.send(pdu.response());
  });
  session.on('unbind', (pdu) => {
    emit({ event: 'unbind' });
    session.send(pdu.response(), () => {
      session.close();
      server.close();
    });
  });
});

server.listen(0, '127.0.0.1', () => {
  emit({ event: 'listening', port: server.address().port });
});
