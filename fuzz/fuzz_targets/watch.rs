//! Any bytes as a watch of Pods in protobuf: cut into frames, each read as the live watch reads
//! it (a Pod, a bookmark or a Status), and a Pod then read into the model.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mtls_guard::inventory::protobuf;
use mtls_guard::model::Pod;

fuzz_target!(|bytes: &[u8]| {
    let mut buffer = bytes::BytesMut::from(bytes);
    while let Ok(Some(frame)) = protobuf::frame(&mut buffer, 1 << 20) {
        let Ok(event) = protobuf::event(&frame) else {
            continue;
        };
        let _ = protobuf::bookmark(event.object);
        let _ = protobuf::api_status(event.object);
        if let Ok(pod) = protobuf::pod(event.object) {
            let _ = Pod::read(&pod);
        }
    }
});
