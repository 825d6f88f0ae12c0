"""The tensor shapes of the TT-LoRA paper's Table III, with the matrix each was meant for.

(m, n) = (out_features, in_features). DeBERTa's shapes are for its fused attention projection `in_proj`
(nn.Linear(768, 2304)); RoBERTa's for the 768x768 query/value; LLaMA's for 4096x4096 q/v.
Two entries of the table's text do not multiply to the matrix size, evidently transcription slips, and are
listed here as corrected (documented in the README): "[8, 6, 2, 2, 2, 2, 2, 2, 2, 6, 8]" (product 294,912, half
of 768²) is taken with one more 2, and "[16, 16, 16, 16, 16]" is taken as [16]*6 (Table IV's LLaMA2 shape).
"""

DEBERTA_IN_PROJ = (2304, 768)
ROBERTA_QV = (768, 768)
LLAMA_QV = (4096, 4096)

TABLE_III = [
    (DEBERTA_IN_PROJ, [64, 36, 12, 64]),
    (DEBERTA_IN_PROJ, [32, 12, 3, 4, 12, 32]),
    (DEBERTA_IN_PROJ, [12, 8, 8, 3, 8, 8, 12]),
    (DEBERTA_IN_PROJ, [32, 16, 2, 3, 3, 3, 2, 32]),
    (DEBERTA_IN_PROJ, [32, 4, 2, 2, 2, 3, 3, 3, 2, 32]),
    (DEBERTA_IN_PROJ, [16, 2, 4, 2, 2, 2, 3, 3, 3, 2, 2, 16]),
    (ROBERTA_QV, [64, 16, 9, 64]),
    (ROBERTA_QV, [12, 8, 8, 8, 8, 12]),
    (ROBERTA_QV, [12, 8, 8, 2, 4, 8, 12]),
    (ROBERTA_QV, [12, 8, 8, 2, 2, 2, 8, 12]),
    (ROBERTA_QV, [8, 6, 2, 2, 4, 4, 2, 2, 6, 8]),
    (ROBERTA_QV, [8, 6, 2, 2, 2, 2, 2, 2, 2, 2, 6, 8]),
    (LLAMA_QV, [128, 32, 32, 128]),
    (LLAMA_QV, [16, 16, 16, 16, 16, 16]),
    (LLAMA_QV, [16, 16, 4, 4, 4, 4, 16, 16]),
    (LLAMA_QV, [16, 8, 4, 4, 2, 2, 4, 4, 8, 16]),
    (LLAMA_QV, [16, 4, 4, 4, 2, 2, 2, 2, 4, 4, 4, 16]),
]
