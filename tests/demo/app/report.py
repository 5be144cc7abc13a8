"""Builds the demo's one line of output."""
import json
import email.message
import urllib.parse

from .words import count_words


def summary(words):
    msg = email.message.EmailMessage()
    msg["Subject"] = " ".join(words)
    data = {"words": count_words(words), "subject": msg["Subject"], "query": urllib.parse.urlencode({"q": words[0]})}
    return json.dumps(data, sort_keys=True)
