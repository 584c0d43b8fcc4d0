// ESME client driven by node `smpp` 0.5.1, for sluice's SMPP interop test.
// Usage: node smpp_client.js PORT
// Binds as transceiver, submits one message with a user_message_reference TLV, waits for a
// delivery receipt, answers it, sends enquire_link, unbinds. Prints JSON lines of what it parsed.
'use strict';
const smpp = require('smpp');

const port = Number(process.argv[2]);
const emit = (o) => process.stdout.write(JSON.stringify(o) + '\n');
const text = (sm) => {
  if (sm && typeof sm === 'object' && 'message' in sm) return String(sm.message);
  if (Buffer.isBuffer(sm)) return sm.toString('latin1');
  return String(sm);
};
const fail = (e) => { emit({ event: 'error', error: String(e) }); process.exit(1); };

const session = smpp.connect({ url: 'smpp://127.0.0.1:' + port });
session.on('error', fail);
setTimeout(() => fail('timeout'), 20000).unref();

session.on('deliver_sm', (pdu) => {
  emit({
    event: 'deliver_sm',
    sequence: pdu.sequence_number,
    esm_class: pdu.esm_class,
    receipted_message_id: pdu.receipted_message_id,
    message_state: pdu.message_state,
    short_message: text(pdu.short_message),
  });
  session.send(pdu.response());
  session.enquire_link({}, (r) => {
    emit({ event: 'enquire_link_resp', status: r.command_status });
    session.unbind({}, (u) => {
      emit({ event: 'unbound', status: u.command_status });
      session.close();
    });
  });
});

session.on('connect', () => {
  session.bind_transceiver({ system_id: 'nodeesme', password: 'pw', interface_version: 0x34 }, (pdu) => {
    emit({ event: 'bound', status: pdu.command_status, system_id: pdu.system_id });
    session.submit_sm({
      source_addr_ton: 5,
      source_addr: 'sluice',
      dest_addr_ton: 1,
      dest_addr_npi: 1,
      destination_addr: '8613900139000',
      registered_delivery: 1,
      short_message: 'hello from node',
      user_message_reference: 77,
    }, (r) => {
      emit({ event: 'submit_sm_resp', status: r.command_status, message_id: r.message_id });
    });
  });
});
