//! sluice-campaign (being written).
