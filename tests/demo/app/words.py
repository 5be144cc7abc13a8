"""Counting, kept apart to give the demo a relative import."""
import collections


def count_words(words):
    return dict(collections.Counter(words))
