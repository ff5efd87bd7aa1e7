//! Tampering with the link: messages and raw frames injected, frames corrupted, lost,
//! duplicated or reordered.

use std::collections::VecDeque;

use bytes::Bytes;

use crate::codec::{encode_frame, Message};
use crate::engine::Key;

use super::node::Node;
use super::{pick, Mux, Pair, Peer};

impl Pair {
    /// Messages reach `to` as if its peer had sent them: in one frame (merged when several)
    /// or one frame each. Checksummed when the connection uses checksums.
    pub fn inject(&mut self, to: Peer, messages: Vec<(Mux, Message)>, one_frame: bool) {
        self.tampered = true;
        let node = self.node(to);
        let messages: Vec<Message> = messages
            .into_iter()
            .map(|(mux, mut m)| {
                m.mux_id = resolve(node, mux);
                m
            })
            .collect();
        if messages.is_empty() {
            return;
        }
        let frames: Vec<Bytes> = if one_frame {
            vec![encode_frame(&messages, self.checksums)]
        } else {
            messages
                .iter()
                .map(|m| encode_frame(std::slice::from_ref(m), self.checksums))
                .collect()
        };
        for frame in frames {
            self.receive(to, &frame);
        }
        self.settle_at(to);
    }

    /// A raw frame reaches `to`; with `fix`, its final checksum is made to match first.
    pub fn inject_raw(&mut self, to: Peer, mut frame: Vec<u8>, fix: bool) {
        self.tampered = true;
        if fix {
            fix_checksum(&mut frame);
        }
        self.receive(to, &Bytes::from(frame));
        self.settle_at(to);
    }

    /// Flips bits of a byte of a frame on its way from `from` (its checksum recomputed
    /// when the connection uses them).
    pub fn corrupt(&mut self, from: Peer, frame: u8, at: u32, xor: u8) {
        let checksums = self.checksums;
        self.tampered |= !self.node(from).link.is_empty();
        let link = &mut self.node(from).link;
        let Some(i) = pick(link.make_contiguous(), frame) else {
            return;
        };
        let mut bytes = link[i].to_vec();
        let at = at as usize % bytes.len();
        bytes[at] ^= xor.max(1);
        if checksums {
            fix_checksum(&mut bytes);
        }
        link[i] = Bytes::from(bytes);
    }

    /// Loses a frame on its way from `from`.
    pub fn drop_frame(&mut self, from: Peer, frame: u8) {
        let link = &mut self.node(from).link;
        if let Some(i) = pick(link.make_contiguous(), frame) {
            link.remove(i);
            self.tampered = true;
        }
    }

    /// Delivers a frame on its way from `from` twice.
    pub fn duplicate_frame(&mut self, from: Peer, frame: u8) {
        let link = &mut self.node(from).link;
        if let Some(i) = pick(link.make_contiguous(), frame) {
            let copy = link[i].clone();
            link.insert(i, copy);
            self.tampered = true;
        }
    }

    /// Swaps two frames on their way from `from`.
    pub fn swap_frames(&mut self, from: Peer, frame: u8) {
        let link = &mut self.node(from).link;
        if let Some(i) = pick(link.make_contiguous(), frame) {
            if i + 1 < link.len() {
                link.swap(i, i + 1);
                self.tampered = true;
            }
        }
    }
}

fn resolve(node: &Node, mux: Mux) -> u64 {
    let nth = |ids: &VecDeque<u64>, i: u8| {
        if ids.is_empty() {
            0
        } else {
            ids[usize::from(i) % ids.len()]
        }
    };
    match mux {
        Mux::Raw(v) => v,
        Mux::Made(i) => {
            // Live ones first: they reach deeper.
            let live: Vec<u64> = node
                .calls
                .iter()
                .chain(node.openings.iter())
                .copied()
                .chain(node.caller_ends())
                .map(Key::mux_id)
                .collect();
            if live.is_empty() || i >= 128 {
                nth(&node.made_ids, i)
            } else {
                live[usize::from(i) % live.len()]
            }
        }
        Mux::Served(i) => nth(&node.served_ids, i),
    }
}
/// Makes the checksum that ends a frame (a single message's, or a merged wrapper's) match
/// the bytes before it again.
pub fn fix_checksum(frame: &mut [u8]) {
    if frame.len() < 10 {
        return;
    }
    let at = frame.len() - 9;
    frame[at] = 0xcf;
    let sum = crate::codec::wire::xxh3_64(&frame[..at]);
    frame[at + 1..].copy_from_slice(&sum.to_be_bytes());
}
