{
  "targets": [
    {
      "target_name": "relay",
      "sources": ["native/relay.c"],
      "cflags": ["-O2", "-g", "-Wall", "-Wextra", "-Werror"]
    }
  ]
}
