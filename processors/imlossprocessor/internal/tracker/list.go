package tracker

// links are the neighbours of an element of an intrusive list.
type links[T any] struct{ prev, next *T }

// list is an intrusive doubly-linked list, oldest first: its elements embed their links, so
// moving an element costs no allocation. at returns an element's links.
type list[T any] struct {
	head, tail *T
	at         func(*T) *links[T]
}

func (l *list[T]) pushBack(e *T) {
	le := l.at(e)
	le.prev, le.next = l.tail, nil
	if l.tail != nil {
		l.at(l.tail).next = e
	} else {
		l.head = e
	}
	l.tail = e
}

func (l *list[T]) remove(e *T) {
	le := l.at(e)
	if le.prev != nil {
		l.at(le.prev).next = le.next
	} else if l.head == e {
		l.head = le.next
	}
	if le.next != nil {
		l.at(le.next).prev = le.prev
	} else if l.tail == e {
		l.tail = le.prev
	}
	le.prev, le.next = nil, nil
}

// moveToBack makes e the newest element.
func (l *list[T]) moveToBack(e *T) {
	if l.tail != e {
		l.remove(e)
		l.pushBack(e)
	}
}
