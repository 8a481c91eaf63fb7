module github.com/sockhop/sockhop-go

go 1.26
