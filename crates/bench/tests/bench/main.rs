//! The load generator against an in-process emulator: every scenario completes, and a refused
//! request fails the measurement with the emulator's exact answer.

mod scenarios;
