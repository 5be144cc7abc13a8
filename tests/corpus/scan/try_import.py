try:
    import fast
except ImportError:
    import slow
else:
    pass
