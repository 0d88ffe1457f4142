//! IPVS mode (being written).
