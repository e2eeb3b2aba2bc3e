"""The agent: reconciles NodeConfig into its vRouter and runs the proxies."""
