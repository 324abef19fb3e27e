//! The distkit workspace test suite lives in `tests/`; this library is empty.
