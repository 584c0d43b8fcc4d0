//! Model test of the engine adapters: random puts, deletes, replaces and takes (which report
//! the old value: the queue counters rely on it), scans and last-key lookups inside write
//! transactions, checked against a `BTreeMap`, for every backend. This is what guards the sled
//! overlay (pending writes merged over committed data) and redb's range handling.

use std::collections::BTreeMap;
use std::path::Path;

use proptest::prelude::*;
use sluice::store::{AnyBackend, Backend, BackendKind, Kv, StoreError};

#[derive(Clone, Debug)]
enum Step {
    Put(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
    Replace(Vec<u8>, Vec<u8>),
    Take(Vec<u8>),
    Get(Vec<u8>),
    Scan(Vec<u8>, Vec<u8>, usize),
    Last(Vec<u8>, Vec<u8>),
}

fn key() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(0u8..4, 0..3)
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (key(), prop::collection::vec(any::<u8>(), 0..4)).prop_map(|(k, v)| Step::Put(k, v)),
        key().prop_map(Step::Delete),
        (key(), prop::collection::vec(any::<u8>(), 0..4)).prop_map(|(k, v)| Step::Replace(k, v)),
        key().prop_map(Step::Take),
        key().prop_map(Step::Get),
        (key(), key(), 0usize..6).prop_map(|(a, b, n)| Step::Scan(a, b, n)),
        (key(), key()).prop_map(|(a, b)| Step::Last(a, b)),
    ]
}

type Model = BTreeMap<Vec<u8>, Vec<u8>>;

fn model_scan(m: &Model, a: &[u8], b: &[u8], n: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
    if a >= b {
        return Vec::new();
    }
    m.range(a.to_vec()..b.to_vec())
        .take(n)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn model_last(m: &Model, a: &[u8], b: &[u8]) -> Option<Vec<u8>> {
    if a >= b {
        return None;
    }
    m.range(a.to_vec()..b.to_vec())
        .next_back()
        .map(|(k, _)| k.clone())
}

/// Runs `steps` in one transaction against `kv` and `model`; returns the first mismatch.
fn run(kv: &mut dyn Kv, model: &mut Model, steps: &[Step]) -> Result<Option<String>, StoreError> {
    for (i, s) in steps.iter().enumerate() {
        let bad = match s {
            Step::Put(k, v) => {
                kv.put(k, v)?;
                model.insert(k.clone(), v.clone());
                None
            }
            Step::Delete(k) => {
                kv.delete(k)?;
                model.remove(k);
                None
            }
            Step::Replace(k, v) => {
                let got = kv.replace(k, v)?;
                let want = model.insert(k.clone(), v.clone());
                (got != want).then(|| format!("replace {k:?}: old {got:?} != {want:?}"))
            }
            Step::Take(k) => {
                let got = kv.take(k)?;
                let want = model.remove(k);
                (got != want).then(|| format!("take {k:?}: old {got:?} != {want:?}"))
            }
            Step::Get(k) => {
                let got = kv.get(k)?;
                (got.as_ref() != model.get(k)).then(|| format!("get {k:?}: {got:?}"))
            }
            Step::Scan(a, b, n) => {
                let mut got = Vec::new();
                kv.scan(a, b, *n, &mut got)?;
                let want = model_scan(model, a, b, *n);
                (got != want).then(|| format!("scan {a:?}..{b:?} x{n}: {got:?} != {want:?}"))
            }
            Step::Last(a, b) => {
                let got = kv.last_key(a, b)?;
                let want = model_last(model, a, b);
                (got != want).then(|| format!("last {a:?}..{b:?}: {got:?} != {want:?}"))
            }
        };
        if let Some(b) = bad {
            return Ok(Some(format!("step {i}: {b}")));
        }
    }
    Ok(None)
}

fn check(kind: BackendKind, dir: &Path, txns: &[Vec<Step>]) -> Result<(), TestCaseError> {
    let backend = AnyBackend::open(kind, dir).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let mut model = Model::new();
    for steps in txns {
        let mut pending = model.clone();
        let outcome = backend
            .write(|kv| run(kv, &mut pending, steps))
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        if let Some(msg) = outcome {
            return Err(TestCaseError::fail(msg));
        }
        model = pending;
        // Committed state seen by a read transaction.
        let all = backend
            .read(|kv| {
                let mut out = Vec::new();
                kv.scan(&[], &[0xFF; 4], usize::MAX, &mut out)?;
                Ok(out)
            })
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let want: Vec<_> = model.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        prop_assert_eq!(all, want);
    }
    // An aborted transaction leaves nothing behind.
    let before = backend.read(|kv| {
        let mut out = Vec::new();
        kv.scan(&[], &[0xFF; 4], usize::MAX, &mut out)?;
        Ok(out)
    });
    let aborted: Result<(), StoreError> = backend.write(|kv| {
        kv.put(&[9, 9], b"x")?;
        Err(StoreError::Backend("abort".into()))
    });
    prop_assert!(aborted.is_err());
    let after = backend.read(|kv| {
        let mut out = Vec::new();
        kv.scan(&[], &[0xFF; 4], usize::MAX, &mut out)?;
        Ok(out)
    });
    prop_assert_eq!(before.ok(), after.ok());
    Ok(())
}

fn txns() -> impl Strategy<Value = Vec<Vec<Step>>> {
    prop::collection::vec(prop::collection::vec(step(), 0..40), 1..4)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn redb_matches_model(t in txns()) {
        let dir = tempfile::tempdir().unwrap();
        check(BackendKind::Redb, dir.path(), &t)?;
    }

    #[cfg(feature = "sled")]
    #[test]
    fn sled_matches_model(t in txns()) {
        let dir = tempfile::tempdir().unwrap();
        check(BackendKind::Sled, dir.path(), &t)?;
    }

    #[cfg(feature = "fjall")]
    #[test]
    fn fjall_matches_model(t in txns()) {
        let dir = tempfile::tempdir().unwrap();
        check(BackendKind::Fjall, dir.path(), &t)?;
    }
}
