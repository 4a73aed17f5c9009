//! Integration tests of Your App against a fake Scalekit that records what it receives.

mod binary;
mod form_login;
mod handoff;
mod hosts;
mod pages;
mod support;
