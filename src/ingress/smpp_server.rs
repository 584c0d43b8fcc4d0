//! SMPP server for ESMEs that bind to sluice (DESIGN.md §2 `ingress/smpp_server.rs`).
//!
//! Not built yet (a later issue). The plan: accept binds on `listeners.smpp`, authenticate
//! system_id/password against an account, turn each submit_sm into the same validated
//! submission the HTTP API produces (`ingress::message`), store it through `ingress::accept`
//! and answer submit_sm_resp only after the durable commit, then return receipts as
//! deliver_sm (esm_class 0x04) from the account's outbox.
