# Never finishes loading: the load must still end, with a timeout.
while True:
    pass
