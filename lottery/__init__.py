"""Lottery-ticket sub-networks by iterative magnitude pruning (DESIGN.md step 6).

Reserved: no issue has asked for this stage yet, so the package holds no code.
"""
