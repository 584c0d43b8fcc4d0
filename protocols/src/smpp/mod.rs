//! smpp (placeholder, being written).
