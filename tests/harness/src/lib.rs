//! Test harness shared by swg's tests: headless Chromium over the DevTools protocol.
