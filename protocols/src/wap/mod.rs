//! wap (placeholder, being written).
