# import nothing
