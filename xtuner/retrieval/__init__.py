"""Retrieval: sentence vectors from any method's encoder (``encode``), XTREME's nearest-neighbour search and
margin-based bitext mining (``search``), and the evaluation of a retrieval task (``evaluate``: Tatoeba, BUCC 2018
and their synthetic twins). No training happens here."""
