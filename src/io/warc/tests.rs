//! Unit tests of the WARC framing helpers: codecs, places, record lengths.

use super::*;

#[test]
fn the_codec_comes_from_the_first_bytes() {
    assert_eq!(Codec::sniff(&[0x1f, 0x8b, 8, 0]), Codec::Gzip);
    assert_eq!(Codec::sniff(&[0x28, 0xb5, 0x2f, 0xfd, 0]), Codec::Zstd);
    // A WARC-zstd file opens with its dictionary's skippable frame.
    let dict_frame = [0x5d, 0x2a, 0x4d, 0x18, 2, 0, 0, 0, 7, 7];
    assert_eq!(Codec::sniff(&dict_frame), Codec::Zstd);
    assert_eq!(skippable_len(&dict_frame), Some(10));
    // Cut inside its payload, it is no frame.
    assert_eq!(skippable_len(&dict_frame[..9]), None);
    assert_eq!(skippable_len(&[0x28, 0xb5, 0x2f, 0xfd, 0, 0, 0, 0]), None);
    assert_eq!(Codec::sniff(b"WARC/1.1\r\n"), Codec::Plain);
}

#[test]
fn a_place_inside_a_member_names_both_offsets() {
    assert_eq!(Place::at(690).to_string(), "byte offset 690");
    assert_eq!(Place::inside(690, 0).to_string(), "byte offset 690");
    assert_eq!(
        Place::inside(0, 5120).to_string(),
        "byte offset 0 (byte 5120 of the member's decompressed content)"
    );
}

#[test]
fn record_lengths_tell_a_cut_header_from_garbage() {
    let rec = b"WARC/1.1\r\nWARC-Type: warcinfo\r\nContent-Length: 3\r\n\r\nabc\r\n\r\n";
    assert_eq!(record_len(rec).ok(), Some(rec.len() - 4));
    assert!(matches!(record_len(&rec[..20]), Err(Framing::CutOff)));
    assert!(matches!(
        record_len(b"<html>\r\n\r\n"),
        Err(Framing::NotAHeader(l)) if l == "<html>"
    ));
}
