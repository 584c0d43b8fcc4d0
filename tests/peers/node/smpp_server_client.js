// ESME driven by node `smpp` 0.5.1 against sluice's SMPP server (tests/smpp_server_interop.rs).
// Usage: node smpp_server_client.js PORT
// Binds as transceiver, submits a short text and a two-part UDH (8-bit reference) text, each
// asking for a receipt, answers deliver_sm receipts until one per message arrived, unbinds.
// Prints JSON lines of what node smpp parsed.
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
setTimeout(() => fail('timeout'), 30000).unref();

let receipts = 0;
session.on('deliver_sm', (pdu) => {
  emit({
    event: 'deliver_sm',
    esm_class: pdu.esm_class,
    receipted_message_id: pdu.receipted_message_id,
    message_state: pdu.message_state,
    short_message: text(pdu.short_message),
  });
  session.send(pdu.response());
  receipts += 1;
  if (receipts === 2) {
    session.unbind({}, (u) => {
      emit({ event: 'unbound', status: u.command_status });
      session.close();
    });
  }
});

const submit = (fields) => new Promise((resolve) => {
  session.submit_sm(Object.assign({
    source_addr_ton: 0,
    source_addr: '10690001',
    dest_addr_ton: 1,
    dest_addr_npi: 1,
    destination_addr: '8613900139000',
    registered_delivery: 1,
  }, fields), (r) => {
    emit({ event: 'submit_sm_resp', status: r.command_status, message_id: r.message_id });
    resolve(r);
  });
});

session.on('connect', () => {
  session.bind_transceiver({ system_id: 'nodeesme', password: 'pw', interface_version: 0x34 }, async (pdu) => {
    emit({ event: 'bound', status: pdu.command_status, system_id: pdu.system_id });
    await submit({ short_message: 'hello from node' });
    // Two parts, UDH concatenation IE (8-bit reference 0x21), sent one after the other.
    await submit({ esm_class: 0x40, short_message: { udh: Buffer.from([5, 0, 3, 0x21, 2, 1]), message: 'node long part one, ' } });
    await submit({ esm_class: 0x40, short_message: { udh: Buffer.from([5, 0, 3, 0x21, 2, 2]), message: 'part two' } });
  });
});
