//! The engine: pure, synchronous flow stepping. No I/O.
