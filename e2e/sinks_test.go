package e2e

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net"
	"net/http"
	"net/http/httptest"
	"net/mail"
	"net/textproto"
	"strings"
	"sync"
	"testing"
)

func decodeJSON(resp *http.Response, out any) error {
	return json.NewDecoder(resp.Body).Decode(out)
}

// smtpSink is a minimal SMTP server on loopback that accepts every message, so the e-mail
// Alertmanager renders from the shipped template can be read back.
type smtpSink struct {
	ln   net.Listener
	mu   sync.Mutex
	mail []string
}

func newSMTPSink(t *testing.T) *smtpSink {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &smtpSink{ln: ln}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go s.serve(conn)
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
	})
	return s
}

func (s *smtpSink) addr() string { return s.ln.Addr().String() }

// serve speaks just enough SMTP for Go's net/smtp client (which Alertmanager uses).
func (s *smtpSink) serve(conn net.Conn) {
	defer conn.Close()
	tp := textproto.NewConn(conn)
	reply := func(code int, msg string) bool { return tp.PrintfLine("%d %s", code, msg) == nil }
	if !reply(220, "imcol-e2e ESMTP") {
		return
	}
	for {
		line, err := tp.ReadLine()
		if err != nil {
			return
		}
		cmd := strings.ToUpper(strings.SplitN(line, " ", 2)[0])
		switch cmd {
		case "EHLO", "HELO":
			_ = tp.PrintfLine("250-imcol-e2e")
			reply(250, "8BITMIME")
		case "DATA":
			reply(354, "end with <CRLF>.<CRLF>")
			body, err := io.ReadAll(tp.DotReader())
			if err != nil {
				return
			}
			s.mu.Lock()
			s.mail = append(s.mail, string(body))
			s.mu.Unlock()
			reply(250, "queued")
		case "QUIT":
			reply(221, "bye")
			return
		default: // MAIL, RCPT, RSET, NOOP
			reply(250, "ok")
		}
	}
}

// messages returns the mails received so far, decoded: subject line first, then every text part.
func (s *smtpSink) messages() []string {
	s.mu.Lock()
	raw := append([]string(nil), s.mail...)
	s.mu.Unlock()
	decoded := make([]string, 0, len(raw))
	for _, m := range raw {
		decoded = append(decoded, decodeMail(m))
	}
	return decoded
}

// decodeMail undoes MIME: RFC 2047 subjects, multipart bodies, quoted-printable and base64 parts.
func decodeMail(raw string) string {
	msg, err := mail.ReadMessage(strings.NewReader(raw))
	if err != nil {
		return raw
	}
	subject, err := new(mime.WordDecoder).DecodeHeader(msg.Header.Get("Subject"))
	if err != nil {
		subject = msg.Header.Get("Subject")
	}
	var b strings.Builder
	b.WriteString("Subject: " + subject + "\n")
	appendPart(&b, textproto.MIMEHeader(msg.Header), msg.Body)
	return b.String()
}

func appendPart(b *strings.Builder, header textproto.MIMEHeader, body io.Reader) {
	mediaType, params, err := mime.ParseMediaType(header.Get("Content-Type"))
	if err == nil && strings.HasPrefix(mediaType, "multipart/") {
		mr := multipart.NewReader(body, params["boundary"])
		for {
			part, err := mr.NextRawPart()
			if err != nil {
				return
			}
			appendPart(b, part.Header, part)
		}
	}
	switch strings.ToLower(header.Get("Content-Transfer-Encoding")) {
	case "quoted-printable":
		body = quotedprintable.NewReader(body)
	case "base64":
		body = base64.NewDecoder(base64.StdEncoding, body)
	}
	text, _ := io.ReadAll(body)
	b.Write(text)
	b.WriteString("\n")
}

// webhookSink records Alertmanager webhook notifications.
type webhookSink struct {
	srv  *httptest.Server
	mu   sync.Mutex
	msgs []amWebhook
}

// amWebhook is the part of Alertmanager's webhook payload the tests read.
type amWebhook struct {
	Status string `json:"status"`
	Alerts []struct {
		Status      string            `json:"status"`
		Labels      map[string]string `json:"labels"`
		Annotations map[string]string `json:"annotations"`
	} `json:"alerts"`
}

func newWebhookSink(t *testing.T) *webhookSink {
	w := &webhookSink{}
	w.srv = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		var msg amWebhook
		if err := json.NewDecoder(bufio.NewReader(r.Body)).Decode(&msg); err != nil {
			http.Error(rw, err.Error(), http.StatusBadRequest)
			return
		}
		w.mu.Lock()
		w.msgs = append(w.msgs, msg)
		w.mu.Unlock()
	}))
	t.Cleanup(w.srv.Close)
	return w
}

func (w *webhookSink) url() string { return w.srv.URL + "/alerts" }

// saw reports whether a notification with the given status carried an alert named alertname.
func (w *webhookSink) saw(alertname, status string) bool { //nolint:unparam // for any alert; the tests check one
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, m := range w.msgs {
		for _, a := range m.Alerts {
			if a.Labels["alertname"] == alertname && a.Status == status {
				return true
			}
		}
	}
	return false
}
