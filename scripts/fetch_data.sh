#!/usr/bin/env bash
# Fetch the real data scattermotion uses (see scattermotion/data/fetch_data.sh, which ships in the package).
exec bash "$(dirname "$0")/../scattermotion/data/fetch_data.sh" "$@"
