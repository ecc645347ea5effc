//! Root CA loading, generation and export; leaf minting; the leaf cache.
