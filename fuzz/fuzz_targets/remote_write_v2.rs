#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| strata_fuzz::remote_write_v2(data));
