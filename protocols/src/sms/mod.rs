//! sms (placeholder, being written).
