//! sluice-loadtest (being written).
