"""Probing science: UD → UniMorph word datasets, activation extraction, neuron rankers. No Ray here."""
