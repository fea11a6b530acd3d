"""The watch-folder daemon: inbox scanning, the job journal, systemd notification."""
