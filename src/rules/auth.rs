//! Who may change the public rules: the [`OperatorAuth`] seam (its gateway-account
//! implementation is `ingress::operator::AccountOperators`, which checks keys the way ingress
//! does) and [`AnyOperator`], which asks several sources.
//!
//! The management API asks an [`OperatorAuth`] for the operator behind a request's headers:
//! no `Authorization` header at all → 401; a credential that is not an operator's (unknown,
//! or an account without `operator = true`) → 403; an operator → the name recorded in the
//! audit trail. Other credential sources (the campaign service's operator users) implement
//! the same trait.

use http::HeaderMap;

/// Finds the operator behind a request.
pub trait OperatorAuth: Send + Sync {
    /// The operator's name for the audit trail, or `None` when the credential is not an
    /// operator's.
    fn operator(&self, headers: &http::HeaderMap) -> Option<String>;
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

    /// A source that knows one token.
    struct One(&'static str, &'static str);

    impl OperatorAuth for One {
        fn operator(&self, headers: &HeaderMap) -> Option<String> {
            (crate::bearer::token(headers)? == self.0).then(|| self.1.to_owned())
        }
    }

    fn headers(auth: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(http::header::AUTHORIZATION, auth.parse().expect("header"));
        h
    }

    #[test]
    fn any_operator_asks_each_source() {
        let any = AnyOperator(vec![
            std::sync::Arc::new(One("a", "ops")),
            std::sync::Arc::new(One("b", "night")),
        ]);
        assert_eq!(any.operator(&headers("Bearer b")), Some("night".into()));
        assert_eq!(any.operator(&headers("Bearer a")), Some("ops".into()));
        assert_eq!(any.operator(&headers("Bearer c")), None);
    }
}
