if 1:
	import a
        import b
