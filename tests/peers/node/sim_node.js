// Drives the sluice simulator with the node `smpp` package as an ESME (transceiver).
// Usage: node sim_node.js PORT SYSTEM_ID PASSWORD COUNT TAG
// Submits COUNT messages with registered_delivery, acknowledges every deliver_sm, waits for
// all responses and receipts, unbinds and prints {"resp_ids": [...], "dlr_ids": [...]}.
// Exits 2 on timeout, 3 on a refused bind.
'use strict';
const path = require('path');
const smpp = require(path.join(__dirname, 'node_modules', 'smpp'));

const [port, systemId, password, countStr, tag] = process.argv.slice(2);
const count = parseInt(countStr, 10);
const respIds = [];
const dlrIds = [];

const timer = setTimeout(() => {
  console.log(JSON.stringify({ error: 'timeout', resp: respIds.length, dlr: dlrIds.length }));
  process.exit(2);
}, 20000);

const session = smpp.connect({ url: `smpp://127.0.0.1:${port}`, auto_enquire_link_period: 10000 });

function maybeDone() {
  if (respIds.length === count && dlrIds.length === count) {
    clearTimeout(timer);
    session.unbind(() => {
      session.close();
      console.log(JSON.stringify({ resp_ids: respIds, dlr_ids: dlrIds }));
      process.exit(0);
    });
  }
}

session.on('deliver_sm', (pdu) => {
  session.send(pdu.response());
  let id = pdu.receipted_message_id;
  if (!id) {
    const text = typeof pdu.short_message === 'object' ? pdu.short_message.message : String(pdu.short_message);
    const m = /id:(\S+)/.exec(text || '');
    id = m ? m[1] : null;
  }
  dlrIds.push(id);
  maybeDone();
});

session.on('error', (e) => {
  console.log(JSON.stringify({ error: String(e) }));
  process.exit(4);
});

session.on('connect', () => {
  session.bind_transceiver({ system_id: systemId, password }, (pdu) => {
    if (pdu.command_status !== 0) {
      console.log(JSON.stringify({ error: 'bind', status: pdu.command_status }));
      process.exit(3);
    }
    for (let i = 0; i < count; i++) {
      session.submit_sm({
        source_addr: '10690001',
        destination_addr: '86139' + String(i).padStart(6, '0'),
        short_message: `${tag}:${i} hello from node`,
        registered_delivery: 1,
      }, (resp) => {
        if (resp.command_status === 0) respIds.push(resp.message_id);
        maybeDone();
      });
    }
  });
});
