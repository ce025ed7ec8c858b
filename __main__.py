"""gin-deploy: a Go Gin service from source to production over HTTPS."""

from gin_deploy.program import main

main()
