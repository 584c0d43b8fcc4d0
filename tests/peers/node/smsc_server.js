// An SMSC written with node `smpp` 0.5.1 (smpp.createServer), for sluice's egress-channel
// interop test (tests/channel_interop_node.rs). Nobody in this project wrote this peer's
// SMPP stack, so it checks our bind driver / worker against an independent implementation.
//
// Usage: node smsc_server.js
// Listens on 127.0.0.1:0 and prints {"event":"listening","port":N}. For every ESME:
// - accepts bind_transceiver / bind_transmitter / bind_receiver (any credentials, which it
//   prints), answers enquire_link and unbind;
// - answers each submit_sm with a fresh message_id in upper-case HEX (counting from 0x1F00),
//   prints what it parsed (addresses, data_coding, text, UDH IEs as hex, SAR TLVs), then
//   sends a delivery receipt deliver_sm (esm_class 0x04) for that id on the same session,
//   quoting the id in DECIMAL, zero-padded, in the receipt text only — as many real SMSCs
//   do — so the gateway must normalise hex vs decimal to correlate.
// Exits when stdin closes (the test dropped it) or after 60 s.
'use strict';
const smpp = require('smpp');

const emit = (o) => process.stdout.write(JSON.stringify(o) + '\n');
setTimeout(() => { emit({ event: 'error', error: 'timeout' }); process.exit(1); }, 60000).unref();
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();

let nextId = 0x1F00;

const server = smpp.createServer((session) => {
  session.on('error', (e) => emit({ event: 'error', error: String(e) }));
  for (const kind of ['bind_transceiver', 'bind_transmitter', 'bind_receiver']) {
    session.on(kind, (pdu) => {
      emit({
        event: 'bind',
        kind,
        system_id: pdu.system_id,
        password: pdu.password,
        interface_version: pdu.interface_version,
      });
      session.send(pdu.response({ system_id: 'nodesmsc' }));
    });
  }
  session.on('submit_sm', (pdu) => {
    const id = nextId++;
    const hex = id.toString(16).toUpperCase();
    const sm = pdu.short_message || {};
    const udh = Array.isArray(sm.udh) ? sm.udh.map((ie) => Buffer.from(ie).toString('hex')) : [];
    emit({
      event: 'submit_sm',
      message_id: hex,
      source_addr: pdu.source_addr,
      destination_addr: pdu.destination_addr,
      dest_addr_ton: pdu.dest_addr_ton,
      esm_class: pdu.esm_class,
      data_coding: pdu.data_coding,
      registered_delivery: pdu.registered_delivery,
      text: typeof sm.message === 'string' ? sm.message : Buffer.from(sm.message || []).toString('latin1'),
      udh,
      sar: pdu.sar_msg_ref_num === undefined ? null : {
        ref: pdu.sar_msg_ref_num,
        total: pdu.sar_total_segments,
        seq: pdu.sar_segment_seqnum,
      },
    });
    session.send(pdu.response({ message_id: hex }));
    const dec = String(id).padStart(10, '0');
    session.deliver_sm({
      source_addr: pdu.destination_addr,
      destination_addr: pdu.source_addr,
      esm_class: 4,
      short_message: `id:${dec} sub:001 dlvrd:001 submit date:2611260153 done date:2611260154 stat:DELIVRD err:000 text:hello`,
    }, (r) => emit({ event: 'deliver_sm_resp', status: r.command_status, message_id: hex }));
  });
  session.on('enquire_link', (pdu) => {
    emit({ event: 'enquire_link' });
    session.send(pdu.response());
  });
  session.on('unbind', (pdu) => {
    emit({ event: 'unbind' });
    session.send(pdu.response(), () => session.close());
  });
});

server.listen(0, '127.0.0.1', () => {
  emit({ event: 'listening', port: server.address().port });
});
