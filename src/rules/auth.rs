//! Who may change the public rules: the [`OperatorAuth`] seam and its gateway-account
//! implementation.
//!
//! The management API asks an [`OperatorAuth`] for the operator behind a request's headers:
//! no `Authorization` header at all → 401; a credential that is not an operator's (unknown,
//! or an account without `operator = true`) → 403; an operator → the name recorded in the
//! audit trail. Other credential sources (the campaign service's operator users) implement
//! the same trait.

use http::HeaderMap;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Finds the operator behind a request.
pub trait OperatorAuth: Send + Sync {
    /// The operator's name for the audit trail, or `None` when the credential is not an
    /// operator's.
    fn operator(&self, headers: &http::HeaderMap) -> Option<String>;
}

/// Operators are the gateway accounts marked `operator = true`, authenticated with their
/// API keys (`Authorization: Bearer <key>`, SHA-256 compared in constant time against every
/// operator key, as ingress does).
#[derive(Debug, Clone, Default)]
pub struct AccountOperators {
    /// (account name, SHA-256 of each of its keys).
    operators: Vec<(String, Vec<[u8; 32]>)>,
}

impl AccountOperators {
    /// Operators from (name, key hashes) of the accounts marked operator.
    pub fn new(operators: Vec<(String, Vec<[u8; 32]>)>) -> Self {
        Self { operators }
    }
}

impl OperatorAuth for AccountOperators {
    fn operator(&self, headers: &HeaderMap) -> Option<String> {
        let key = headers
            .get(http::header::AUTHORIZATION)?
            .to_str()
            .ok()?
            .strip_prefix("Bearer ")?
            .trim();
        let presented: [u8; 32] = Sha256::digest(key.as_bytes()).into();
        let mut found = None;
        // Every key is compared, whichever matches, so timing says nothing about which.
        for (name, keys) in &self.operators {
            for k in keys {
                if bool::from(presented.ct_eq(k)) {
                    found = Some(name.clone());
                }
            }
        }
        found
    }
}

/// Several credential sources asked in order; the first that names an operator wins (the
/// gateway's operator accounts, then the campaign service's operator users).
pub struct AnyOperator(pub Vec<std::sync::Arc<dyn OperatorAuth>>);

impl OperatorAuth for AnyOperator {
    fn operator(&self, headers: &HeaderMap) -> Option<String> {
        self.0.iter().find_map(|a| a.operator(headers))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingress::account::key_hash;

    fn headers(auth: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(http::header::AUTHORIZATION, auth.parse().expect("header"));
        h
    }

    #[test]
    fn only_operator_keys_are_operators() {
        let ops = AccountOperators::new(vec![("ops".into(), vec![key_hash("secret")])]);
        assert_eq!(ops.operator(&headers("Bearer secret")), Some("ops".into()));
        assert_eq!(ops.operator(&headers("Bearer other")), None);
        assert_eq!(ops.operator(&headers("Basic secret")), None);
        assert_eq!(ops.operator(&HeaderMap::new()), None);
    }

    #[test]
    fn any_operator_asks_each_source() {
        let a = AccountOperators::new(vec![("ops".into(), vec![key_hash("a")])]);
        let b = AccountOperators::new(vec![("night".into(), vec![key_hash("b")])]);
        let any = AnyOperator(vec![std::sync::Arc::new(a), std::sync::Arc::new(b)]);
        assert_eq!(any.operator(&headers("Bearer b")), Some("night".into()));
        assert_eq!(any.operator(&headers("Bearer a")), Some("ops".into()));
        assert_eq!(any.operator(&headers("Bearer c")), None);
    }
}
