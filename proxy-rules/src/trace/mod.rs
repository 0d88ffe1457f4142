//! Packet tracer (being written).
