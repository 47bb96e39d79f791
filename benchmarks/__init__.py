"""Speed and memory of every stage, against raw-COPY limits measured in the same run."""
