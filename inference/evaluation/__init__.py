"""Multiple-choice evaluation of a GGUF model (MedMCQA-style log-likelihood scoring).

``data`` reads question files, ``scoring`` computes log-likelihoods with llama.cpp, ``stats`` holds the
Wilson interval and McNemar's test, ``report`` formats results, ``run`` ties them together.
"""
