//! Resilience tests of the emulator binary run as a child process: acknowledged state survives
//! SIGKILL (`crash`), and floods of abandoned sign-ins and idle or slow connections neither grow
//! memory without bound nor starve other clients (`flood`).

mod child;

mod crash;
mod flood;
