//! The name index: every host name of every list, exception and feed of a policy set,
//! stored once, with the facts (which list, which feed) attached to it.
//!
//! Names live back to back in one byte arena. An open-addressing table (linear probing)
//! maps a 64-bit hash of a name to its entry. Each slot packs a 32-bit fingerprint of the
//! hash with the entry number, so a probe reads the slot array alone until a fingerprint
//! matches. Only then does it compare the stored bytes, so hash collisions never produce
//! a false match.
//!
//! Lookups walk the suffixes of the asked name on label boundaries (`a.b.example.com`,
//! `b.example.com`, `example.com`, `com`): a five-label name costs five probes whatever
//! the number of stored names. The hashes of all suffixes come from a single pass over
//! the name from right to left.

/// A fact attached to a name: the source it came from and a source-specific value
/// (the URL rule number for URL entries, [`Fact::NO_EXTRA`] otherwise).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fact {
    pub(crate) source: u32,
    pub(crate) extra: u32,
}

impl Fact {
    /// The `extra` value of facts that carry none.
    pub(crate) const NO_EXTRA: u32 = u32::MAX;

    pub(crate) fn plain(source: u32) -> Fact {
        Fact {
            source,
            extra: Fact::NO_EXTRA,
        }
    }
}

/// Tag bit in an entry's fact word: set when the word indexes `fact_lists`.
const LIST_TAG: u32 = 1 << 31;

/// Maximum table load, as numerator over 8, before the table doubles.
const MAX_LOAD_EIGHTHS: usize = 5;

/// The name index (see the module documentation).
pub(crate) struct NameIndex {
    seed: u64,
    /// 0 is empty; otherwise `fingerprint << 32 | (entry + 1)`.
    slots: Vec<u64>,
    arena: Vec<u8>,
    /// End offset in `arena` of each entry's name; the start is the previous end.
    ends: Vec<u32>,
    /// Per entry: a source id (one plain fact) or `LIST_TAG | index` into `fact_lists`.
    facts: Vec<u32>,
    fact_lists: Vec<Vec<Fact>>,
}

impl std::fmt::Debug for NameIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NameIndex")
            .field("names", &self.ends.len())
            .field("arena_bytes", &self.arena.len())
            .finish()
    }
}

/// Reason a name could not be added.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IndexFull {
    /// The arena would pass 4 GiB or the entry count 2^31.
    Capacity,
}

impl NameIndex {
    /// Creates an empty index whose hashes are keyed by `seed`.
    pub(crate) fn new(seed: u64) -> NameIndex {
        NameIndex {
            seed,
            slots: vec![0; 1024],
            arena: Vec::new(),
            ends: Vec::new(),
            facts: Vec::new(),
            fact_lists: Vec::new(),
        }
    }

    /// Number of distinct names stored.
    pub(crate) fn len(&self) -> usize {
        self.ends.len()
    }

    /// Adds `fact` to the normalized `name`, storing the name if it is new. A fact already
    /// present on the name is not added twice.
    pub(crate) fn insert(&mut self, name: &str, fact: Fact) -> Result<(), IndexFull> {
        let hash = full_hash(self.seed, name.as_bytes());
        if let Some(entry) = self.find(name.as_bytes(), hash) {
            self.add_fact(entry, fact)?;
            return Ok(());
        }

        if self.arena.len() + name.len() > u32::MAX as usize
            || self.ends.len() >= (LIST_TAG - 1) as usize
        {
            return Err(IndexFull::Capacity);
        }
        if (self.ends.len() + 1) * 8 > self.slots.len() * MAX_LOAD_EIGHTHS {
            self.grow();
        }

        let entry = self.ends.len() as u32;
        self.arena.extend_from_slice(name.as_bytes());
        self.ends.push(self.arena.len() as u32);
        self.facts.push(LIST_TAG | u32::MAX);
        self.add_fact(entry, fact)?;
        self.place(hash, entry);
        Ok(())
    }

    /// Releases spare capacity once all names are in.
    pub(crate) fn shrink_to_fit(&mut self) {
        self.arena.shrink_to_fit();
        self.ends.shrink_to_fit();
        self.facts.shrink_to_fit();
        self.fact_lists.shrink_to_fit();
    }

    /// Heap bytes held by the index (an estimate from capacities).
    pub(crate) fn heap_bytes(&self) -> usize {
        self.slots.capacity() * 8
            + self.arena.capacity()
            + self.ends.capacity() * 4
            + self.facts.capacity() * 4
            + self
                .fact_lists
                .iter()
                .map(|list| list.capacity() * std::mem::size_of::<Fact>() + 24)
                .sum::<usize>()
    }

    /// Calls `visit(suffix, facts)` for every suffix of the normalized `name` (the whole
    /// name first, the top-level label last) that has facts. `visit` returns false to stop.
    pub(crate) fn for_each_suffix<'n>(
        &self,
        name: &'n str,
        mut visit: impl FnMut(&'n str, &[Fact]) -> bool,
    ) {
        let bytes = name.as_bytes();
        let mut state = self.seed;
        let mut start = bytes.len();
        let mut single = [Fact::plain(0)];

        // Walk right to left so each suffix's hash extends the previous one, then report
        // the matches most specific first. Names rarely match more than a few suffixes, so
        // the matches sit in a small array and spill to the heap only beyond it.
        let mut found = [(0usize, 0u32); INLINE_MATCHES];
        let mut spilled: Vec<(usize, u32)> = Vec::new();
        let mut count = 0;
        while start > 0 {
            start -= 1;
            state = step(state, bytes[start]);
            if start == 0 || bytes[start - 1] == b'.' {
                if let Some(entry) = self.find(&bytes[start..], finish(state)) {
                    if count < INLINE_MATCHES {
                        found[count] = (start, entry);
                    } else {
                        spilled.push((start, entry));
                    }
                    count += 1;
                }
                if start > 0 {
                    // Hash the dot too so `b.example.com` and `bexample.com` differ.
                    start -= 1;
                    state = step(state, b'.');
                }
            }
        }

        let inline = &found[..count.min(INLINE_MATCHES)];
        for &(start, entry) in spilled.iter().rev().chain(inline.iter().rev()) {
            let facts = self.facts_of(entry, &mut single);
            if !visit(&name[start..], facts) {
                return;
            }
        }
    }

    /// The facts of the exact normalized `name`, if it is stored.
    pub(crate) fn facts_of_name(&self, name: &str) -> Option<Vec<Fact>> {
        let entry = self.find(name.as_bytes(), full_hash(self.seed, name.as_bytes()))?;
        let mut single = [Fact::plain(0)];
        Some(self.facts_of(entry, &mut single).to_vec())
    }

    fn facts_of<'a>(&'a self, entry: u32, single: &'a mut [Fact; 1]) -> &'a [Fact] {
        let word = self.facts[entry as usize];
        if word & LIST_TAG == 0 {
            single[0] = Fact::plain(word);
            &single[..]
        } else {
            &self.fact_lists[(word & !LIST_TAG) as usize]
        }
    }

    fn add_fact(&mut self, entry: u32, fact: Fact) -> Result<(), IndexFull> {
        let word = self.facts[entry as usize];
        let fresh = word == LIST_TAG | u32::MAX;
        if fresh && fact.extra == Fact::NO_EXTRA && fact.source < LIST_TAG {
            self.facts[entry as usize] = fact.source;
            return Ok(());
        }

        let mut list = if fresh {
            Vec::with_capacity(1)
        } else if word & LIST_TAG == 0 {
            vec![Fact::plain(word)]
        } else {
            let list = &mut self.fact_lists[(word & !LIST_TAG) as usize];
            if !list.contains(&fact) {
                list.push(fact);
            }
            return Ok(());
        };
        if !list.contains(&fact) {
            list.push(fact);
        }
        if list.len() == 1 && fact.extra == Fact::NO_EXTRA && fact.source < LIST_TAG {
            self.facts[entry as usize] = fact.source;
            return Ok(());
        }
        if self.fact_lists.len() >= (LIST_TAG - 1) as usize {
            return Err(IndexFull::Capacity);
        }
        self.facts[entry as usize] = LIST_TAG | self.fact_lists.len() as u32;
        self.fact_lists.push(list);
        Ok(())
    }

    fn name_of(&self, entry: u32) -> &[u8] {
        let end = self.ends[entry as usize] as usize;
        let start = if entry == 0 {
            0
        } else {
            self.ends[entry as usize - 1] as usize
        };
        &self.arena[start..end]
    }

    fn find(&self, name: &[u8], hash: u64) -> Option<u32> {
        let mask = self.slots.len() - 1;
        let fingerprint = hash >> 32;
        let mut slot = hash as usize & mask;
        loop {
            let word = self.slots[slot];
            if word == 0 {
                return None;
            }
            if word >> 32 == fingerprint {
                let entry = (word as u32) - 1;
                if self.name_of(entry) == name {
                    return Some(entry);
                }
            }
            slot = (slot + 1) & mask;
        }
    }

    fn place(&mut self, hash: u64, entry: u32) {
        let mask = self.slots.len() - 1;
        let mut slot = hash as usize & mask;
        while self.slots[slot] != 0 {
            slot = (slot + 1) & mask;
        }
        self.slots[slot] = (hash >> 32) << 32 | u64::from(entry + 1);
    }

    fn grow(&mut self) {
        let new_len = self.slots.len() * 2;
        self.slots = vec![0; new_len];
        for entry in 0..self.ends.len() as u32 {
            let hash = full_hash(self.seed, self.name_of(entry));
            self.place(hash, entry);
        }
    }
}

/// Suffix matches kept on the stack during one walk.
const INLINE_MATCHES: usize = 8;

fn step(state: u64, byte: u8) -> u64 {
    (state ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
}

/// Mixes the running hash so both halves (slot and fingerprint) depend on every byte.
fn finish(state: u64) -> u64 {
    let mut x = state;
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

fn full_hash(seed: u64, name: &[u8]) -> u64 {
    finish(
        name.iter()
            .rev()
            .fold(seed, |state, byte| step(state, *byte)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn suffixes(index: &NameIndex, name: &str) -> Vec<(String, Vec<u32>)> {
        let mut out = Vec::new();
        index.for_each_suffix(name, |suffix, facts| {
            out.push((suffix.to_string(), facts.iter().map(|f| f.source).collect()));
            true
        });
        out
    }

    #[test]
    fn suffix_walk_reports_most_specific_first() {
        let mut index = NameIndex::new(7);
        index.insert("example.com", Fact::plain(1)).unwrap();
        index.insert("a.example.com", Fact::plain(2)).unwrap();
        index.insert("com", Fact::plain(3)).unwrap();

        let found = suffixes(&index, "x.a.example.com");
        assert_eq!(
            found,
            vec![
                ("a.example.com".to_string(), vec![2]),
                ("example.com".to_string(), vec![1]),
                ("com".to_string(), vec![3]),
            ]
        );
    }

    #[test]
    fn suffix_walk_stops_at_label_boundaries() {
        let mut index = NameIndex::new(7);
        index.insert("example.com", Fact::plain(1)).unwrap();
        assert!(suffixes(&index, "badexample.com").is_empty());
        assert!(suffixes(&index, "example.co").is_empty());
    }

    #[test]
    fn facts_accumulate_without_duplicates() {
        let mut index = NameIndex::new(7);
        index.insert("example.com", Fact::plain(1)).unwrap();
        index.insert("example.com", Fact::plain(1)).unwrap();
        index
            .insert(
                "example.com",
                Fact {
                    source: 2,
                    extra: 9,
                },
            )
            .unwrap();
        assert_eq!(index.len(), 1);
        assert_eq!(
            index.facts_of_name("example.com").unwrap(),
            vec![
                Fact::plain(1),
                Fact {
                    source: 2,
                    extra: 9
                }
            ]
        );
    }

    #[test]
    fn many_names_survive_growth() {
        let mut index = NameIndex::new(99);
        for i in 0..20_000 {
            index
                .insert(&format!("host{i}.example{}.com", i % 13), Fact::plain(i))
                .unwrap();
        }
        assert_eq!(index.len(), 20_000);
        for i in (0..20_000).step_by(997) {
            let facts = index
                .facts_of_name(&format!("host{i}.example{}.com", i % 13))
                .unwrap();
            assert_eq!(facts, vec![Fact::plain(i)]);
        }
        assert!(index.facts_of_name("host20000.example0.com").is_none());
    }
}
