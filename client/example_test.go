package client_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/bertq/bertq/client"
	"github.com/bertq/bertq/tokenizer"
)

// The examples call a running bertq whose model "tiny" has generated
// weights: their labels are real outputs of that model, and meaningless.

func ExampleClient_Infer() {
	nc, err := nats.Connect(natsURL) // e.g. nats.DefaultURL
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()
	c, err := client.New(nc)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := c.Infer(ctx, "tiny", "The cat sat on the mat.", "A cat was sitting on the mat.")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(r.Label, len(r.Probabilities))
	// Output: equivalent 2
}

func ExampleClient_InferTokens() {
	nc, err := nats.Connect(natsURL)
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()
	c, err := client.New(nc, client.WithEncoding(client.Msgpack))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	// Tokenize with the model's vocabulary, to its compiled length (128).
	enc, err := tokenizer.Default().EncodePair("The cat sat on the mat.", "A cat was sitting on the mat.", 128)
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := c.InferTokens(ctx, "tiny", client.Tokens{InputIDs: enc.InputIDs, TokenTypeIDs: enc.TokenTypeIDs, AttentionMask: enc.AttentionMask})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(r.Label)

	// The sequence must be exactly the compiled length.
	short := client.Tokens{InputIDs: enc.InputIDs[:16], TokenTypeIDs: enc.TokenTypeIDs[:16], AttentionMask: enc.AttentionMask[:16]}
	_, err = c.InferTokens(ctx, "tiny", short)
	fmt.Println(errors.Is(err, client.ErrWrongLength))
	// Output:
	// equivalent
	// true
}

func ExampleClient_InferAsync() {
	nc, err := nats.Connect(natsURL)
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()
	c, err := client.New(nc)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pairs := []client.Text{
		{A: "The cat sat.", B: "A cat was sitting."},
		{A: "Stocks fell sharply on Monday.", B: "The market dropped at the start of the week."},
		{A: "He plays the violin.", B: "It rained all day in Paris."},
	}
	var futures []*client.Future
	for i, p := range pairs {
		f, err := c.InferAsync(ctx, "tiny", p, client.WithID(fmt.Sprintf("pair-%d", i)))
		if err != nil {
			log.Fatal(err)
		}
		futures = append(futures, f)
	}
	for _, f := range futures {
		r, err := f.Result()
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(f.ID(), r.ID, r.Label)
	}
	// Output:
	// pair-0 pair-0 equivalent
	// pair-1 pair-1 equivalent
	// pair-2 pair-2 equivalent
}

func ExampleWithDirect() {
	nc, err := nats.Connect(natsURL)
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()
	// Straight into the JetStream work queue, re-sending (same id) after 2 s
	// without an answer or after "unavailable".
	c, err := client.New(nc, client.WithDirect(), client.WithRetry(2*time.Second))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := c.Infer(ctx, "tiny", "The cat sat.", "A cat was sitting.", client.WithID("direct-1"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(r.ID, r.Label)
	// Output: direct-1 equivalent
}

func ExampleError() {
	nc, err := nats.Connect(natsURL)
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()
	c, err := client.New(nc)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = c.Infer(ctx, "no-such-model", "a", "b")
	var e *client.Error
	if errors.As(err, &e) {
		fmt.Println(e.Code, errors.Is(err, client.ErrUnknownModel))
	}
	// Output: unknown_model true
}

func ExampleClient_Enqueue() {
	nc, err := nats.Connect(natsURL)
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()
	c, err := client.New(nc)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	// Answers to queued work come to an inbox of our choosing: subscribe
	// first, since answers are core NATS messages.
	inbox := nc.NewInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ack, err := c.Enqueue(ctx, "tiny", client.Text{A: "The cat sat.", B: "A cat was sitting."}, inbox, client.WithID("queued-1"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(ack.Stream, ack.Duplicate)

	m, err := sub.NextMsg(10 * time.Second)
	if err != nil {
		log.Fatal(err)
	}
	r, err := client.ParseReply(m)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(r.ID, r.Label)
	// Output:
	// BERTQ_INFER false
	// queued-1 equivalent
}
