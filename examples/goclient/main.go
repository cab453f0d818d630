// Command goclient is the README's Go example: it creates a token, lists
// the user's tokens as they stream in, and shows what a failed call
// carries. Against a dev-mode server (go run ./cmd/server --emulator):
//
//	go run ./examples/goclient
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	tokenv1 "github.com/cbkgate/cbkgate/gen/cbkgate/token/v1"
)

func main() {
	addr := flag.String("addr", "localhost:9090", "cbkgate's gRPC address")
	flag.Parse()
	conn, err := grpc.NewClient(*addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	client := tokenv1.NewTokenServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	created, err := client.Create(ctx, &tokenv1.CreateRequest{UserId: "alice", Name: "from-go"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("created", created.GetId())

	stream, err := client.List(ctx, &tokenv1.ListRequest{UserId: "alice", Order: tokenv1.Order_ORDER_ASC})
	if err != nil {
		log.Fatal(err)
	}
	for {
		r, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break // the listing is complete
		}
		if err != nil {
			log.Fatal(err) // it is not: the status says why
		}
		fmt.Println("listed", r.GetToken().GetId(), r.GetToken().GetName(), r.GetCursor())
	}

	// A bad request: the details say which field and why.
	_, err = client.Delete(ctx, &tokenv1.DeleteRequest{UserId: "alice", TokenId: ".."})
	st := status.Convert(err)
	fmt.Println("error", st.Code(), st.Message())
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.ErrorInfo:
			fmt.Println("  reason", d.GetReason(), "domain", d.GetDomain())
		case *errdetails.BadRequest:
			for _, v := range d.GetFieldViolations() {
				fmt.Println("  field", v.GetField(), "-", v.GetDescription())
			}
		case *errdetails.RetryInfo:
			fmt.Println("  retry after", d.GetRetryDelay().AsDuration())
		}
	}
}
