"""Training code checked to give the same numbers as this checkout's, though its fingerprint differs.

A change to a fingerprinted file that leaves every number as it was (a refactor, a clearer error
message) gives the same results a new fingerprint. ``scripts/same-history.py COMMIT --record`` trains
short runs of the three models with COMMIT's code and with this tree's, each in a fresh process with
the same thread count, and only when every history, prediction, status and eval-mode training figure
is equal bit for bit adds COMMIT's fingerprint here. Records of these fingerprints count as made by
this code (``origin.same_numbers``). A change that alters any number must empty this table: the older
runs are then older code, as they should be.
"""

# fingerprint -> how it was checked
SAME_NUMBERS: dict[str, str] = {
    '73c9669a3f181780766a6d3e46e4288bc0e758ca23bf2e54fbf9bc76eb494e2d': 'f45d8e7, checked 2026-12-08 by scripts/same-history.py (nmodel, bmodel, wmodel, H=256, 3 epochs, 5000 images, 1 thread(s), on AMD EPYC (family 25 model 1, AVX2, 2 cores))',
    '14c0d3aa22d84eb0fb2e0e3e1418f6018ae43fd413eaec2e9d8c4c6166336cd4': '909d8bd, checked 2026-12-08 by scripts/same-history.py (nmodel, bmodel, wmodel, H=256, 3 epochs, 5000 images, 1 thread(s), on AMD EPYC (family 25 model 1, AVX2, 2 cores))',
    '616534dcdd9ad8ede74aee53e04d78536623f97721bb1dd7edba7fa2ac863aad': '4dc5bfb, checked 2026-12-07 by scripts/same-history.py (nmodel, bmodel, wmodel, H=256, 3 epochs, 5000 images, 1 thread(s), on AMD EPYC (family 25 model 1, AVX2, 2 cores))',
    'a18e64ac03fb84856b3558b26e7a61307d7d10701accae2eaa086b30045dbb47': '039e6c9, checked 2026-12-07 by scripts/same-history.py (nmodel, bmodel, wmodel, H=256, 3 epochs, 5000 images, 1 thread(s), on AMD EPYC (family 25 model 1, AVX2, 2 cores))',
    'f3ad503e39baa485eb1cd55f9cfc7e2c3345b7e98cdad06bd131d2e0c91b7960': '88a4baa, checked 2026-12-07 by scripts/same-history.py (nmodel, bmodel, wmodel, H=256, 3 epochs, 5000 images, 1 thread(s), on AMD EPYC (family 25 model 1, AVX2, 2 cores))',
    '92a60746257c0d6ec53d83a59578c2fb833fc2ff57013ef74cd63954e541c831': '34edfd7, checked 2026-12-07 by scripts/same-history.py (nmodel, bmodel, wmodel, H=256, 3 epochs, 5000 images, 1 thread(s), on AMD EPYC (family 25 model 1, AVX2, 2 cores))',
    'e02a52ed58aea6b515ee29de3edcc74dc25b7bfe5e88fadcfe28d5449bdba4ac': '0770766, checked 2026-12-07 by scripts/same-history.py (nmodel, bmodel, wmodel, H=256, 3 epochs, 5000 images, 1 thread(s), on AMD EPYC (family 25 model 1, AVX2, 2 cores))',
    'adaa6a22a18fd770edf0852782e607fb64c4cacee5aa598995c94f226bd28db3': '5abb11b, checked 2026-12-07 by scripts/same-history.py (nmodel, bmodel, wmodel, H=256, 3 epochs, 5000 images, 1 thread(s), on AMD EPYC (family 25 model 1, AVX2, 2 cores))',
    'a5e76b146e175363b23918706ca4d95409b89d211bc4f7ca8aab480baabbdda1': '20b0df4, checked 2026-12-07 by scripts/same-history.py (nmodel, bmodel, wmodel, H=256, 3 epochs, 5000 images, 1 thread(s), on AMD EPYC (family 25 model 1, AVX2, 2 cores))',
    'daba87148302ee8679e06d97c3fa011d67e0b875413fa4e7ecbbbeb908e723e8': '1e29450, checked 2026-12-07 by scripts/same-history.py (nmodel, bmodel, wmodel, H=256, 3 epochs, 5000 images, 1 thread(s), on AMD EPYC (family 25 model 1, AVX2, 2 cores))',
    '195dafb2a7ffa330d10b5abd86aae2eead7cc713f96f8d4de732acf30b90e0b8': 'a057821, checked 2026-12-04 by scripts/same-history.py (three models, H=256, 3 epochs, 5000 images, 1 thread(s), on AMD EPYC (family 25 model 17, AVX512, 2 cores))',
    '31048bf1ceaa4425c42633817aab05fac1621e391781e8d59ad7da32f8bd2edf': 'c8b309d, checked 2026-12-02 by scripts/same-history.py (three models, H=256, 3 epochs, 5000 images, 1 thread(s), on AMD EPYC (family 25, AVX2, 1 core))',
}
