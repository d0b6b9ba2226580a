//! strata's SSTables: immutable sorted runs of events of one time partition, clustered by
//! user, compressed and checksummed block by block.
//!
//! Not built yet: the builder, the mmap reader and the block cache arrive with the SSTable
//! issue (#3). This crate exists now so that the workspace shows the data flow and the
//! crate graph (`sstable` depends on `strata-vfs`, never on the engine).
