"""Sources feed bytes from the world (pcap files, live sockets) into the core."""
