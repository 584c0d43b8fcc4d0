//! Every contact rule, its window, and the first-reason counting order.

mod common;

use common::*;
use roaring::RoaringBitmap;
use sluice_campaign::Campaigns;
use sluice_campaign::rules::{self, Cap, Channel, ContactPolicy, ListKind, Reason, RuleContext};

const DAY: i64 = 86_400;

fn setup() -> (Campaigns, i64) {
    let mut c = Campaigns::in_memory().unwrap();
    c.load_synthetic(40, 3).unwrap();
    (c, ts("2026-03-10T00:00:00Z").as_second())
}

fn num(c: &Campaigns, id: u32) -> String {
    c.table.msisdn(id).unwrap().to_string()
}

fn add(c: &Campaigns, kind: ListKind, ch: Option<Channel>, name: &str, ids: &[u32]) {
    let nums: Vec<String> = ids.iter().map(|&i| num(c, i)).collect();
    let refs: Vec<&str> = nums.iter().map(String::as_str).collect();
    let change = rules::add_to_list(&c.conn, &c.table, kind, ch, name, &refs).unwrap();
    assert_eq!(
        (change.changed, change.not_subscribers, change.invalid.len()),
        (ids.len() as u64, 0, 0)
    );
}

#[test]
fn each_reason_is_counted_once_under_the_first_matching_rule() {
    let (c, now) = setup();
    add(&c, ListKind::Blacklist, None, "", &[0, 1]);
    add(&c, ListKind::Graylist, None, "", &[1, 2]); // 1 is already blacklisted
    add(&c, ListKind::Staff, None, "", &[3]);
    add(&c, ListKind::DoNotDisturb, Some(Channel::Sms), "", &[4]);
    add(&c, ListKind::DoNotDisturb, Some(Channel::Mms), "", &[5]); // other channel: kept
    add(&c, ListKind::DoNotDisturb, None, "", &[6]); // all channels
    add(&c, ListKind::Custom, None, "complainers", &[7]);
    add(&c, ListKind::Custom, None, "vip-care", &[2, 20]); // 2 counted as graylist
    rules::add_conflict(&c.conn, "DATA10", "DATA20").unwrap();
    insert_contact(&c, 8, "sms", "DATA20", "other", now - DAY); // conflicting, inside 3 days
    insert_contact(&c, 9, "sms", "DATA20", "other", now - 5 * DAY); // conflicting, outside
    insert_contact(&c, 10, "sms", "DATA10", "other", now - 2 * DAY); // same offer, inside 7 days
    insert_contact(&c, 11, "mms", "XYZ", "promo", now - 6 * DAY); // same type, inside
    insert_contact(&c, 12, "sms", "DATA10", "promo", now - 8 * DAY); // outside 7 days
    for _ in 0..2 {
        insert_contact(&c, 13, "sms", "A", "t", now - 10 * DAY); // 2 sms in 30 days
    }
    insert_contact(&c, 14, "sms", "A", "t", now - DAY);
    insert_contact(&c, 14, "mms", "A", "t", now - DAY);
    insert_contact(&c, 14, "wap_push", "A", "t", now - DAY); // 3 non-passive
    insert_contact(&c, 15, "web", "A", "t", now - DAY);
    insert_contact(&c, 15, "web", "A", "t", now - DAY);
    insert_contact(&c, 15, "sms", "A", "t", now - DAY); // web is passive: 1 counted
    insert_contact(&c, 16, "sms", "A", "t", now - 40 * DAY); // outside cap period
    insert_contact(&c, 16, "sms", "A", "t", now - 40 * DAY);
    // Conversions on a conflicting offer also exclude.
    c.conn
        .execute(
            "INSERT INTO conversions (sub_id, task_id, bulk_id, grp, channel, kind, offer, at)
             VALUES (17, 0, 0, '', 'sms', 'order', 'DATA20', ?1)",
            [now - DAY],
        )
        .unwrap();
    let policy = ContactPolicy {
        recent_days: 7,
        conflict_days: 3,
        caps: vec![
            Cap {
                channel: Some(Channel::Sms),
                max: 2,
                period_days: 30,
            },
            Cap {
                channel: None,
                max: 3,
                period_days: 30,
            },
        ],
    };
    let custom = ["complainers".to_owned(), "vip-care".to_owned()];
    let ctx = RuleContext {
        channel: Channel::Sms,
        offer: "DATA10",
        campaign_type: "promo",
        policy: &policy,
        custom_lists: &custom,
        table: &c.table,
    };
    let mut all = RoaringBitmap::new();
    all.insert_range(0..40);
    let (kept, counts) = rules::apply(&c.conn, &ctx, &all, now).unwrap();
    let want = [
        (Reason::Blacklist, 2),
        (Reason::Graylist, 1),
        (Reason::Staff, 1),
        (Reason::DoNotDisturb, 2),
        (Reason::Custom, 2),
        (Reason::ConflictingOffer, 2),
        (Reason::RecentlyMarketed, 2),
        (Reason::ChannelCap, 1),
        (Reason::OverallCap, 1),
    ];
    assert_eq!(counts, want.into());
    let excluded: Vec<u32> = (&all - &kept).iter().collect();
    assert_eq!(
        excluded,
        vec![0, 1, 2, 3, 4, 6, 7, 8, 10, 11, 13, 14, 17, 20]
    );
    assert_eq!(kept.len() + counts.values().sum::<u64>(), 40);

    // The same rules for MMS: the sms-only DND and sms cap do not apply, the mms DND does.
    let ctx = RuleContext {
        channel: Channel::Mms,
        ..ctx
    };
    let (_, counts) = rules::apply(&c.conn, &ctx, &all, now).unwrap();
    assert_eq!(counts[&Reason::DoNotDisturb], 2); // 5 and 6
    assert!(!counts.contains_key(&Reason::ChannelCap));
    assert_eq!(counts[&Reason::OverallCap], 1); // 14 (13 has only 2)
}

#[test]
fn recently_marketed_window_edges_and_disabled_rules() {
    let (c, now) = setup();
    insert_contact(&c, 1, "sms", "DATA10", "", now - 7 * DAY); // exactly at the edge: inside
    insert_contact(&c, 2, "sms", "DATA10", "", now - 7 * DAY - 1); // one second outside
    insert_contact(&c, 3, "sms", "", "", now - DAY); // empty offer never matches empty offer
    let policy = ContactPolicy {
        recent_days: 7,
        ..Default::default()
    };
    let ctx = RuleContext {
        channel: Channel::Sms,
        offer: "DATA10",
        campaign_type: "",
        policy: &policy,
        custom_lists: &[],
        table: &c.table,
    };
    let mut all = RoaringBitmap::new();
    all.insert_range(0..40);
    let (kept, counts) = rules::apply(&c.conn, &ctx, &all, now).unwrap();
    assert_eq!(counts, [(Reason::RecentlyMarketed, 1)].into());
    assert!(!kept.contains(1) && kept.contains(2) && kept.contains(3));
    let off = ContactPolicy::default();
    let ctx = RuleContext {
        policy: &off,
        ..ctx
    };
    assert!(rules::apply(&c.conn, &ctx, &all, now).unwrap().1.is_empty());
}

#[test]
fn invalid_numbers_are_reported_and_unknown_ones_are_kept_for_later() {
    let (c, _) = setup();
    let known = num(&c, 5);
    let change = rules::add_to_list(
        &c.conn,
        &c.table,
        ListKind::Blacklist,
        None,
        "",
        &[&known, "13999999999", "abc"],
    )
    .unwrap();
    assert_eq!(
        (change.changed, change.not_subscribers, change.invalid),
        (2, 1, vec!["abc".to_owned()])
    );
    // Adding again is idempotent.
    assert_eq!(
        rules::add_to_list(&c.conn, &c.table, ListKind::Blacklist, None, "", &[&known])
            .unwrap()
            .changed,
        0
    );
    let page =
        rules::list_entries(&c.conn, &c.table, ListKind::Blacklist, None, None, 0, 10).unwrap();
    let got: Vec<(u64, bool)> = page.iter().map(|e| (e.msisdn, e.subscriber)).collect();
    let mut want = vec![(known.parse().unwrap(), true), (13_999_999_999, false)];
    want.sort_unstable();
    assert_eq!(got, want);
    // Paging by number.
    let next = rules::list_entries(
        &c.conn,
        &c.table,
        ListKind::Blacklist,
        None,
        None,
        got[0].0,
        10,
    )
    .unwrap();
    assert_eq!(next.len(), 1);
}

fn ctx_for<'a>(
    c: &'a Campaigns,
    policy: &'a ContactPolicy,
    custom: &'a [String],
) -> RuleContext<'a> {
    RuleContext {
        channel: Channel::Sms,
        offer: "",
        campaign_type: "",
        policy,
        custom_lists: custom,
        table: &c.table,
    }
}

#[test]
fn a_number_listed_before_import_is_excluded_once_imported_and_removal_readmits() {
    let (mut c, now) = setup();
    let change = rules::add_to_list(
        &c.conn,
        &c.table,
        ListKind::DoNotDisturb,
        None,
        "",
        &["+8613900000001"],
    )
    .unwrap();
    assert_eq!((change.changed, change.not_subscribers), (1, 1));
    c.import_subscribers(&b"msisdn,city\n13900000001,Hefei\n"[..], None)
        .unwrap();
    let id = c.table.id_of(13_900_000_001).unwrap();
    let all: RoaringBitmap = (0..c.table.len()).collect();
    let policy = ContactPolicy::default();
    let (kept, counts) = rules::apply(&c.conn, &ctx_for(&c, &policy, &[]), &all, now).unwrap();
    assert!(!kept.contains(id));
    assert_eq!(counts, [(Reason::DoNotDisturb, 1)].into());
    let change = rules::remove_from_list(
        &c.conn,
        &c.table,
        ListKind::DoNotDisturb,
        None,
        "",
        &["13900000001", "13900000002"],
    )
    .unwrap();
    assert_eq!(change.changed, 1);
    let (kept, _) = rules::apply(&c.conn, &ctx_for(&c, &policy, &[]), &all, now).unwrap();
    assert!(kept.contains(id));
}

#[test]
fn a_custom_list_applies_only_to_sends_that_name_it() {
    let (c, now) = setup();
    add(&c, ListKind::Custom, None, "vip-optout", &[1, 2]);
    add(&c, ListKind::Custom, None, "other", &[3]);
    let all: RoaringBitmap = (0..40).collect();
    let policy = ContactPolicy::default();
    let (_, counts) = rules::apply(&c.conn, &ctx_for(&c, &policy, &[]), &all, now).unwrap();
    assert!(counts.is_empty(), "{counts:?}");
    let named = ["vip-optout".to_owned()];
    let (kept, counts) = rules::apply(&c.conn, &ctx_for(&c, &policy, &named), &all, now).unwrap();
    assert_eq!(counts, [(Reason::Custom, 2)].into());
    assert!(!kept.contains(1) && !kept.contains(2) && kept.contains(3));
    let unknown = ["no-such-list".to_owned()];
    let (_, counts) = rules::apply(&c.conn, &ctx_for(&c, &policy, &unknown), &all, now).unwrap();
    assert!(counts.is_empty());
}

#[test]
fn conflicts_are_symmetric_listed_once_and_removable() {
    let (c, _) = setup();
    rules::add_conflict(&c.conn, "DATA20", "DATA10").unwrap();
    rules::add_conflict(&c.conn, "DATA10", "DATA20").unwrap();
    assert_eq!(
        rules::conflicts(&c.conn).unwrap(),
        vec![("DATA10".to_owned(), "DATA20".to_owned())]
    );
    assert!(rules::add_conflict(&c.conn, "X", "X").is_err());
    assert!(rules::add_conflict(&c.conn, "", "X").is_err());
    assert!(rules::remove_conflict(&c.conn, "DATA20", "DATA10").unwrap());
    assert!(!rules::remove_conflict(&c.conn, "DATA20", "DATA10").unwrap());
    assert!(rules::conflicts(&c.conn).unwrap().is_empty());
}

#[test]
fn lists_of_ids_from_an_older_store_are_folded_into_numbers_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    let (a, b) = {
        let mut c = Campaigns::open(&path).unwrap();
        c.load_synthetic(10, 3).unwrap();
        let mut ids = RoaringBitmap::new();
        ids.insert(2);
        ids.insert(7);
        let mut blob = Vec::new();
        ids.serialize_into(&mut blob).unwrap();
        c.conn
            .execute(
                "INSERT INTO exclusion_lists (kind, channel, name, members)
                 VALUES ('staff', '', 'legacy', ?1)",
                [blob],
            )
            .unwrap();
        (c.table.msisdn(2).unwrap(), c.table.msisdn(7).unwrap())
    };
    let c = Campaigns::open(&path).unwrap();
    let got: Vec<u64> = rules::list_entries(
        &c.conn,
        &c.table,
        ListKind::Staff,
        None,
        Some("legacy"),
        0,
        10,
    )
    .unwrap()
    .iter()
    .map(|e| e.msisdn)
    .collect();
    let mut want = vec![a, b];
    want.sort_unstable();
    assert_eq!(got, want);
    let policy = ContactPolicy::default();
    let all: RoaringBitmap = (0..10).collect();
    let (_, counts) = rules::apply(&c.conn, &ctx_for(&c, &policy, &[]), &all, 0).unwrap();
    assert_eq!(counts, [(Reason::Staff, 2)].into());
    drop(c);
    // Folded once: reopening does not duplicate or resurrect anything.
    let c = Campaigns::open(&path).unwrap();
    assert_eq!(
        rules::list_entries(&c.conn, &c.table, ListKind::Staff, None, None, 0, 10)
            .unwrap()
            .len(),
        2
    );
}

#[test]
fn launch_applies_the_custom_lists_its_spec_names_and_no_others() {
    let (mut c, _) = setup();
    add(&c, ListKind::Custom, None, "vip-optout", &[1, 2, 3]);
    let seg = c
        .segment_from_condition("all", "age >= 0", ts("2026-03-01T00:00:00Z"))
        .unwrap();
    let plan = |c: &mut Campaigns, lists: &[&str]| {
        let task = running_task(c, "t");
        let mut sp = spec(seg.id, vec![slice("2026-03-10T01:00:00Z", None)]);
        sp.custom_lists = lists.iter().map(|s| (*s).to_owned()).collect();
        let bulk = c.create_bulk(task, &sp).unwrap();
        c.plan(bulk, ts("2026-03-10T01:00:00Z")).unwrap()
    };
    let without = plan(&mut c, &[]);
    assert!(without.excluded.is_empty(), "{:?}", without.excluded);
    assert_eq!(without.slices, vec![40]);
    let task = running_task(&mut c, "typo");
    let mut sp = spec(seg.id, vec![slice("2026-03-10T01:00:00Z", None)]);
    sp.custom_lists = vec!["vip-opt0ut".into()];
    let e = c.create_bulk(task, &sp).unwrap_err().to_string();
    assert!(
        e.contains("custom_lists") && e.contains("vip-opt0ut"),
        "{e}"
    );
    let with = plan(&mut c, &["vip-optout"]);
    assert_eq!(with.excluded, [(Reason::Custom, 3)].into());
    assert_eq!(with.slices, vec![37]);
}
