//! cmpp (placeholder, being written).
