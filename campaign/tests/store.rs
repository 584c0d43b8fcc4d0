//! Persistence: imports survive a reopen; segments and feedback streams work on reopened data.

mod common;

use common::*;
use sluice_campaign::Campaigns;
use sluice_campaign::feedback::{self, FeedbackEvent, MoReply, Receipt};

#[test]
fn imported_subscribers_survive_reopen_and_reimport_merges() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    let mut c = Campaigns::open(&path).unwrap();
    let csv = "msisdn,brand,region,city,arpu,age,plan,vip,name\n\
               13800000001,gotone,lanzhou,lz-1,150,30,p1,gold,张三\n\
               13800000002,mzone,tianshui,ts-1,20,19,p2,,李四\n\
               bad,mzone,tianshui,ts-1,20,19,p2,,x\n";
    let r = c.import_subscribers(csv.as_bytes(), None).unwrap();
    assert_eq!((r.new, r.rejected), (2, 1));
    let before: Vec<_> = (0..2).map(|i| c.table.row(i).unwrap()).collect();
    drop(c);
    let mut c = Campaigns::open(&path).unwrap();
    let after: Vec<_> = (0..2).map(|i| c.table.row(i).unwrap()).collect();
    assert_eq!(before, after);
    assert_eq!(c.count(r#"vip = "gold" and name = "张三""#).unwrap(), 1);
    // Second file: one update (last wins, custom value cleared), one new, new custom column.
    let csv2 = "msisdn,brand,arpu,score\n8613800000001,easyown,,7\n13800000003,gotone,88,9\n";
    let r = c.import_subscribers(csv2.as_bytes(), None).unwrap();
    assert_eq!((r.new, r.merged), (1, 1));
    drop(c);
    let c = Campaigns::open(&path).unwrap();
    assert_eq!(c.table.len(), 3);
    let row = c.table.row(0).unwrap();
    assert_eq!(
        (row.brand.as_str(), row.arpu, row.region.as_str()),
        ("easyown", None, "")
    );
    assert_eq!(row.custom, vec![("score".to_owned(), "7".to_owned())]);
    assert_eq!(c.count("score >= 8").unwrap(), 1);
}

#[tokio::test]
async fn in_process_feedback_stream_applies_receipts_and_replies() {
    let mut c = Campaigns::in_memory().unwrap();
    c.load_synthetic(10, 1).unwrap();
    let at = ts("2026-03-05T10:00:00Z").as_second();
    insert_contact(&c, 3, "sms", "DATA10", "promo", at);
    c.conn
        .execute("UPDATE contacts SET gateway_id = 'g1', task_id = 7", [])
        .unwrap();
    let num = c.table.msisdn(3).unwrap();
    let svc = std::sync::Arc::new(std::sync::Mutex::new(c));
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    let h = tokio::spawn(feedback::consume(std::sync::Arc::clone(&svc), rx));
    tx.send(FeedbackEvent::Receipt(Receipt {
        id: Some("g1".into()),
        state: "delivered".into(),
        done_at: None,
        tags: Default::default(),
    }))
    .await
    .unwrap();
    tx.send(FeedbackEvent::Receipt(Receipt {
        id: None,
        state: "failed".into(),
        done_at: None,
        tags: [
            ("task".to_owned(), "7".to_owned()),
            ("subscriber".to_owned(), "4".to_owned()),
        ]
        .into(),
    }))
    .await
    .unwrap();
    tx.send(FeedbackEvent::Reply(MoReply {
        from: format!("0086{num}"),
        to: "10086".into(),
        text: "Y".into(),
        received_at: ts("2026-03-06T10:00:00Z"),
    }))
    .await
    .unwrap();
    // Outside the 7-day attribution window.
    tx.send(FeedbackEvent::Reply(MoReply {
        from: num.to_string(),
        to: "10086".into(),
        text: "Y".into(),
        received_at: ts("2026-03-20T10:00:00Z"),
    }))
    .await
    .unwrap();
    drop(tx);
    assert_eq!(h.await.unwrap(), (2, 2));
    let c = svc.lock().unwrap();
    let state: String = c
        .conn
        .query_row(
            "SELECT state FROM contacts WHERE gateway_id = 'g1'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(state, "delivered");
    let conv: i64 = c
        .conn
        .query_row(
            "SELECT COUNT(*) FROM conversions WHERE kind = 'reply' AND task_id = 7",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(conv, 1);
}

/// A reader that fails after `left` bytes (a broken upload / disk error mid-file).
struct Failing<'a> {
    data: &'a [u8],
    left: usize,
}

impl std::io::Read for Failing<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.left == 0 {
            return Err(std::io::Error::other("disk on fire"));
        }
        let n = buf.len().min(self.left).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        self.left -= n;
        Ok(n)
    }
}

#[test]
fn a_failed_import_writes_nothing_and_keeps_table_and_file_in_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    let mut c = Campaigns::open(&path).unwrap();
    c.import_subscribers("msisdn,brand\n13800000001,gotone\n".as_bytes(), None)
        .unwrap();
    let mut big = Vec::new();
    sluice_campaign::synth::write_city_csv(&mut big, 100_000, 4).unwrap();
    let err = c
        .import_subscribers(
            Failing {
                data: &big,
                left: big.len() / 2,
            },
            None,
        )
        .unwrap_err();
    assert!(err.to_string().contains("disk on fire"), "{err}");
    assert_eq!(c.table.len(), 1);
    drop(c);
    let c = Campaigns::open(&path).unwrap();
    assert_eq!(c.table.len(), 1);
    assert_eq!(c.table.row(0).unwrap().brand, "gotone");
}

#[test]
fn large_streamed_import_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    let mut c = Campaigns::open(&path).unwrap();
    let mut csv = Vec::new();
    sluice_campaign::synth::write_city_csv(&mut csv, 100_000, 4).unwrap();
    let r = c
        .import_subscribers(&csv[..], Some(csv.len() as u64))
        .unwrap();
    assert_eq!((r.new, r.rejected), (100_000, 0));
    let want: Vec<_> = (0..100_000)
        .step_by(997)
        .map(|i| c.table.row(i).unwrap())
        .collect();
    let gotone = c.count(r#"brand = "gotone""#).unwrap();
    assert!(gotone > 10_000);
    drop(c);
    let c = Campaigns::open(&path).unwrap();
    let got: Vec<_> = (0..100_000)
        .step_by(997)
        .map(|i| c.table.row(i).unwrap())
        .collect();
    assert_eq!(got, want);
    assert_eq!(c.count(r#"brand = "gotone""#).unwrap(), gotone);
}

#[test]
fn cancelled_receipts_are_counted_in_the_funnel() {
    let mut c = Campaigns::in_memory().unwrap();
    c.load_synthetic(10, 1).unwrap();
    let at = ts("2026-03-05T10:00:00Z").as_second();
    for sub in 1..=3 {
        insert_contact(&c, sub, "sms", "DATA10", "promo", at);
    }
    c.conn
        .execute(
            "UPDATE contacts SET task_id = 9, gateway_id = 'g' || sub_id",
            [],
        )
        .unwrap();
    // The gateway's emergency stop reports `cancelled`; a delivery and a failure for contrast.
    for (id, state) in [
        ("g1", "cancelled"),
        ("g2", "cancelled"),
        ("g3", "delivered"),
    ] {
        let r = Receipt {
            id: Some(id.into()),
            state: state.into(),
            done_at: None,
            tags: Default::default(),
        };
        assert!(feedback::apply_receipt(&c.conn, &r, at).unwrap(), "{id}");
    }
    let f = c.funnel(9).unwrap();
    assert_eq!(f.len(), 1);
    assert_eq!(
        (f[0].sent, f[0].delivered, f[0].failed, f[0].cancelled),
        (3, 1, 0, 2)
    );
}
