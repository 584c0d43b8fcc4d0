//! sluice gateway library.
